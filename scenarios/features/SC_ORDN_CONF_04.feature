# language: fr
@exigence=SC.ORDN/CONF.04
Fonctionnalité: SC.ORDN/CONF.04 — Ordonnance numérique en échec : envoi au DMP sans QR code
  Quand le service Ordonnance numérique répond KO ou ne répond pas, la prescription est tout de même
  envoyée au DMP, sans QR code, et l'utilisateur voit pourquoi.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "CLERICO" est qualifiée par l'Appli carte Vitale "143110095083713"

  Plan du Scénario: Ordonnance numérique <cas>
    Étant donné le service Ordonnance numérique <cas>
    Quand le médecin rédige une ordonnance de produits de santé
    Et le médecin valide l'ordonnance
    Alors l'appel Ordonnance numérique est en échec avec son motif
    Et l'ordonnance est envoyée au DMP
    Et l'ordonnance reçue par le DMP ne contient pas de QR code

    Exemples:
      | cas              |
      | répond KO        |
      | ne répond pas    |
