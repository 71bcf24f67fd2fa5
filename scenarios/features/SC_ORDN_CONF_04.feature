# language: fr
@exigence=SC.ORDN/CONF.04 @exigence=SC.ORDN/CONF.05
Fonctionnalité: SC.ORDN/CONF.04, SC.ORDN/CONF.05 — Ordonnance numérique en échec : envoi au DMP sans QR code
  Quand le service Ordonnance numérique répond KO ou ne répond pas, la prescription est tout de même
  envoyée au DMP, sans QR code, et l'utilisateur voit pourquoi. La ligne 6.2 du DSR (seed 001) énumère « envoi
  « en Y » » puis « en cas d'absence de réponse du serveur e-Prescription, envoi au DMP sans le Datamatrix » avec les
  identifiants SC.ORDN/CONF.04 puis SC.ORDN/CONF.05 : le second est lu comme ce repli (lecture par l'ordre).

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
