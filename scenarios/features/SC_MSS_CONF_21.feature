# language: fr
@exigence=SC.MSS/CONF.21 @exigence=SC.MSS/CONF.14 @exigence=SC.MSS/UX.32
Fonctionnalité: SC.MSS/CONF.21, SC.MSS/CONF.14, SC.MSS/UX.32 — Message au patient par MSSanté
  Le LGC adresse au patient, par sa messagerie de santé (Mon espace santé), le document qu'il lui remet :
  l'adresse du patient est construite à partir de son INS qualifiée, sans saisie (SC.MSS/UX.32) ; le message
  porte les en-têtes invisibles que l'ANS exploite pour ses statistiques — INS qualifiée, type du document CDA,
  référence du logiciel (SC.MSS/CONF.14) ; il ferme le canal de réponse du patient par « X-MSS-MES: FIN »
  (SC.MSS/CONF.21) : une réponse du patient est alors refusée.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"

  Scénario: L'ordonnance part au patient, canal de réponse fermé
    Quand le médecin rédige une ordonnance de produits de santé
    Et le médecin valide l'ordonnance
    Alors l'ordonnance est envoyée au patient par MSSanté
    Et le message au patient porte l'INS qualifiée, le type du document et la référence du logiciel, sans anomalie
    Et une réponse du patient au médecin est refusée car le canal de réponse est fermé
